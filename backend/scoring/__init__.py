"""Scoring answers against gold labels (no models): field comparison and extraction metrics."""
