import sys

from chexphoto.cli import main

sys.exit(main())
