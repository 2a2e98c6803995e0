"""Database operations as plain functions taking Settings.

Nothing here imports Invoke or decides how to print: functions return values or raise
DbOpsError subclasses whose message is one line fit for the user.
"""
