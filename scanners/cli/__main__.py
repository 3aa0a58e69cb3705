import sys

from scanners.cli import main

sys.exit(main())
