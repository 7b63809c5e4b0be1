"""The one exception type for bad user input.

Scripts catch :class:`UserError` at the top level and print its message as a
single line (no stack trace), then exit non-zero.
"""


class UserError(ValueError):
  """Bad input from the user: a file, flag or value the package cannot use.

  The message names the offending file, flag or value and, where possible,
  what would be accepted instead.
  """
