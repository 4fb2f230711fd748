"""The command line: click commands (``commands``), their options generated from the settings
(``options``), what they print (``output``) and the process's exit statuses (``app``).

May import every layer below it; nothing imports it. Importing it loads only click and the
configurations, so ``fmtrain --help`` stays fast.
"""
