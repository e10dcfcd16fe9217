//! The Starknet core contract's functions and event that orch uses, as Solidity declares them.
#![allow(missing_docs)]

alloy::sol! {
    /// The part of the Starknet core contract's interface orch calls.
    interface IStarknetCore {
        function stateBlockNumber() external view returns (int256);
        function stateRoot() external view returns (uint256);
        function stateBlockHash() external view returns (uint256);
        function updateStateKzgDA(uint256[] calldata programOutput, bytes[] calldata kzgProofs) external;
        function updateState(uint256[] calldata programOutput, uint256 onchainDataHash, uint256 onchainDataSize) external;
        event LogStateUpdate(uint256 globalRoot, int256 blockNumber, uint256 blockHash);
    }
}
