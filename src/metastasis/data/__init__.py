"""Readers, checks and the cache: everything up to uint8 patches and labels."""
