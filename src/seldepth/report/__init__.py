"""Plots, colour maps and reports."""
