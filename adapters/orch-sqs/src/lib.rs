//! orch Queue on Amazon SQS (aws-sdk-sqs): native delay, visibility timeout, redrive to a DLQ.
