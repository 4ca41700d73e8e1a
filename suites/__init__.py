"""Built-in suite files (TOML), installed as the package ``upbench_suites``."""
