"""Data-quality checks over an OMOP CDM in the spirit of OHDSI's Data Quality Dashboard (``l059-omop dq``).

``run_checks(engine, cdm_schema)`` returns one row per check; ``report`` turns that frame into the CSV, the
printed summary, the HTML fragment of the study report and the exit code.
"""

from l059_omop.dq.report import DQ_FAILED_EXIT_CODE, exit_code, html_fragment, summary_lines, write_outputs
from l059_omop.dq.runner import COLUMNS, run_checks

__all__ = ["COLUMNS", "DQ_FAILED_EXIT_CODE", "exit_code", "html_fragment", "run_checks", "summary_lines",
           "write_outputs"]
