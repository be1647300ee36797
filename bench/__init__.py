"""`python -m bench`: how well telephony actions line up with speech, and what that costs.

See bench/README.md for what is measured and the latest full run.
"""

import os

# LiteLLM fetches its model cost map from the network at import unless told otherwise; set it
# before anything imports `line` (worker processes import this package first, too).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
