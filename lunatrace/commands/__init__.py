"""One module per ``lunatrace`` subcommand (see :mod:`lunatrace.cli`)."""
