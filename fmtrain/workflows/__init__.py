"""What each command does, in order: the layer between the command line and the library.

Each workflow takes plain values, calls the library and the tracking boundary, and returns a
small record for the command line to report. Nothing here parses arguments or picks exit codes.

May import every layer below the command line; imports nothing from ``fmtrain.cli``.
"""
