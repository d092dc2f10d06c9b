"""Property-based tests (hypothesis) of the public promises of each jaxspec module."""
