"""Generated from proto/btfd/v1/btfd.proto."""
