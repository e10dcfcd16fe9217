//! orch Storage on Amazon S3 and S3-compatible stores (aws-sdk-s3): prefixes, content hashes, multipart.
