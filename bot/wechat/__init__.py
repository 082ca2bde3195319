"""The WeChat channel: signatures, safe-mode crypto, message parsing and reply XML."""
