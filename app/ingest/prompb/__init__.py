"""Prometheus remote write 1.0 messages: the .proto subsets and protoc's modules (make protos)."""
