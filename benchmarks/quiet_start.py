"""scripts/quiet_start.py for the benchmarks: imported first, before anything imports TensorFlow.

  import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
"""

import os
import runpy

runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "scripts",
                            "quiet_start.py"))
