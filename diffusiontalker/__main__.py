import sys

from diffusiontalker.cli import main

sys.exit(main())
