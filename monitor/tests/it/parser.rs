//! Integration tests: parser.
