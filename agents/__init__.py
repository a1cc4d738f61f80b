"""llmconsole agent side: runs on each GPU host. Never imports textual, console or widgets."""

__version__ = "0.1.0"
