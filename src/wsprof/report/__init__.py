"""Presentation: terminal tables and JSON documents."""
