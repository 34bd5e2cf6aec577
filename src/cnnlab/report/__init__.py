"""Sweep comparison (`cnnlab-compare`): collect job results, tabulate, plot."""
