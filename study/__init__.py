"""The study: experiment grid, runner, results database, analysis and report."""
