"""gce monitor's terminal interface: one widget per module, fed by gce.tui.collect.

Only gce.tui.app and its widgets import textual, and only gce monitor imports them, so that
`gce --help` stays fast. collect, rows, text and report need rich at most.
"""
