"""The HTTP adapter: parse, build a command, hand it to the application service."""
