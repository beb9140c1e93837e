"""Colour themes as TOML files, shipped as package data (see tui/themes.py)."""
