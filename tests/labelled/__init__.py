"""Labelled traces for scoring the rules; see build.py."""
