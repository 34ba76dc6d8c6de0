"""One module per subcommand: add_arguments(parser) and run(args) -> int. No torch import at module level."""
