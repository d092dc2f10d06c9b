"""Execute one notebook in place of its saved outputs (CI); fails on the first cell error."""

import sys
import time

import nbclient
import nbformat

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
t0 = time.time()
client = nbclient.NotebookClient(
    nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}
)
client.execute()
print(f"{path}: executed in {time.time() - t0:.1f}s", flush=True)
