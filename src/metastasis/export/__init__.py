"""Exports of trained models to other runtimes."""
