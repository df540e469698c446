"""Formatting functions, reward functions and data builders that the shipped configs name."""
