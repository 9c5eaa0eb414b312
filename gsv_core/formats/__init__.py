"""One module per file format and file-safety concern: GPT-SoVITS ``.list`` files (:mod:`.listfile`), CSV tables
(:mod:`.csvtable`) and zip archives from users (:mod:`.safezip`). Atomic writes are :mod:`gsv_core.fileio`."""
