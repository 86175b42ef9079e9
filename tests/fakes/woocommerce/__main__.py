"""`python -m tests.fakes.woocommerce`: see cli.py."""

from tests.fakes.woocommerce.cli import main

if __name__ == "__main__":
    main()
