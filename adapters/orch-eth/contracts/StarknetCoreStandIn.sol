// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.30;

/// @title A test stand-in for the Starknet core contract, written for orch.
/// @notice It exposes the subset of the core contract's interface that orch's Ethereum
/// settlement adapter calls, with the same signatures, so the adapter needs no change to settle
/// on the real contract. It keeps only (state root, block number, block hash) and checks what a
/// settlement layer must check for orch's tests to mean something: that each update continues
/// from the stored state, and (KZG DA) that every blob the transaction carries opens, at the
/// program output's evaluation point, to the value the program output claims. It verifies no
/// STARK proof and keeps no L1<->L2 messages.
/// @dev Program output (Starknet OS) read here: [0] initial root, [1] final root, [2] previous
/// block number, [3] new block number, [4] previous block hash, [5] new block hash, [8]
/// use_kzg_da; with KZG DA, [10] x_0, [11] n_blobs, then per blob its commitment as (low 192
/// bits, high 192 bits), then per blob y_i as (low 128 bits, high 128 bits).
contract StarknetCoreStandIn {
    /// The Starknet field prime; the OS writes block number -1 as P - 1.
    uint256 internal constant STARK_PRIME = 0x800000000000011000000000000000000000000000000000000000000000001;
    /// EIP-4844 point evaluation precompile.
    address internal constant POINT_EVALUATION = address(0x0a);
    uint256 internal constant HEADER_LEN = 10;
    uint256 internal constant USE_KZG_DA_INDEX = 8;
    uint256 internal constant X0_INDEX = 10;
    uint256 internal constant N_BLOBS_INDEX = 11;

    uint256 internal root;
    int256 internal blockNumber;
    uint256 internal blockHash;

    /// Emitted once per applied state update, with the state after it.
    event LogStateUpdate(uint256 globalRoot, int256 blockNumber, uint256 blockHash);

    /// @param genesisRoot The root the first update must start from.
    /// @param genesisBlockNumber The last applied block (-1: none yet).
    /// @param genesisBlockHash Its hash.
    constructor(uint256 genesisRoot, int256 genesisBlockNumber, uint256 genesisBlockHash) {
        root = genesisRoot;
        blockNumber = genesisBlockNumber;
        blockHash = genesisBlockHash;
    }

    /// The state root after the last applied update.
    function stateRoot() external view returns (uint256) {
        return root;
    }

    /// The last applied block (-1 before any).
    function stateBlockNumber() external view returns (int256) {
        return blockNumber;
    }

    /// The hash of the last applied block.
    function stateBlockHash() external view returns (uint256) {
        return blockHash;
    }

    /// A state update whose data went into the transaction's blobs.
    /// @param programOutput The Starknet OS program output (use_kzg_da = 1).
    /// @param kzgProofs Per blob, the 48-byte KZG proof that blob i evaluates to y_i at x_0.
    function updateStateKzgDA(uint256[] calldata programOutput, bytes[] calldata kzgProofs) external {
        checkContinuation(programOutput);
        require(programOutput[USE_KZG_DA_INDEX] == 1, "KZG DA output expected (use_kzg_da = 1)");
        require(programOutput.length > N_BLOBS_INDEX, "output ends before n_blobs");
        uint256 nBlobs = programOutput[N_BLOBS_INDEX];
        require(nBlobs > 0 && nBlobs == kzgProofs.length, "one KZG proof per blob expected");
        require(programOutput.length >= N_BLOBS_INDEX + 1 + 4 * nBlobs, "output ends before the KZG segment ends");
        for (uint256 i = 0; i < nBlobs; i++) {
            verifyBlob(programOutput, nBlobs, i, kzgProofs[i]);
        }
        applyUpdate(programOutput);
    }

    /// A state update whose data is in the program output itself (calldata DA).
    /// @param programOutput The Starknet OS program output (use_kzg_da = 0).
    /// The hash and size of the on-chain data (the last two parameters) are not checked here.
    function updateState(uint256[] calldata programOutput, uint256, uint256) external {
        checkContinuation(programOutput);
        require(programOutput[USE_KZG_DA_INDEX] == 0, "calldata DA output expected (use_kzg_da = 0)");
        applyUpdate(programOutput);
    }

    function checkContinuation(uint256[] calldata out) internal view {
        require(out.length >= HEADER_LEN, "output shorter than the OS header");
        require(out[0] == root, "INVALID_PREVIOUS_ROOT");
        uint256 expectedPrev = blockNumber < 0 ? STARK_PRIME - 1 : uint256(blockNumber);
        require(out[2] == expectedPrev, "INVALID_PREVIOUS_BLOCK_NUMBER");
        require(out[3] < STARK_PRIME && int256(out[3]) > blockNumber, "INVALID_NEW_BLOCK_NUMBER");
    }

    function verifyBlob(uint256[] calldata out, uint256 nBlobs, uint256 i, bytes calldata proof) internal view {
        require(proof.length == 48, "a KZG proof is 48 bytes");
        bytes32 versionedHash = blobhash(i);
        require(versionedHash != bytes32(0), "the transaction carries fewer blobs than the output commits to");
        uint256 base = N_BLOBS_INDEX + 1;
        uint256 cLow = out[base + 2 * i];
        uint256 cHigh = out[base + 2 * i + 1];
        require(cLow >> 192 == 0 && cHigh >> 192 == 0, "commitment limb wider than 192 bits");
        uint256 yLow = out[base + 2 * nBlobs + 2 * i];
        uint256 yHigh = out[base + 2 * nBlobs + 2 * i + 1];
        require(yLow >> 128 == 0 && yHigh >> 128 == 0, "y limb wider than 128 bits");
        uint256 y = (yHigh << 128) | yLow;
        // versioned hash | z | y | commitment (48) | proof (48): 192 bytes.
        bytes memory input =
            abi.encodePacked(versionedHash, out[X0_INDEX], y, bytes24(uint192(cHigh)), bytes24(uint192(cLow)), proof);
        (bool ok, bytes memory ret) = POINT_EVALUATION.staticcall(input);
        require(ok && ret.length == 64, "POINT_EVALUATION_FAILED");
    }

    function applyUpdate(uint256[] calldata out) internal {
        root = out[1];
        blockNumber = int256(out[3]);
        blockHash = out[5];
        emit LogStateUpdate(root, blockNumber, blockHash);
    }
}
