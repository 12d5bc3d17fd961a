"""The commands that print what the layers below know: `djap status`, `djap supervise`.

`djap.cli` parses flags and sets Django up, then calls one function here. These are
the top of the house: they may import anything in `djap`, and nothing imports them
but the CLI.
"""
