"""Exit statuses of the `densevid` command."""

EXIT_OK = 0
EXIT_USAGE = 2  # bad options or input: the message says what to change
EXIT_SOME_FAILED = 3  # the job ran, some items failed: see the failures table
EXIT_SYSTEM = 4  # the system refused a file operation (read-only or full disk, no permission, a file in the way)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); rerunning the same command resumes
