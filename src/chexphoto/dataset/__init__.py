"""Dataset tooling: patient-level sampling, the paper's Table 1 / Table 3 statistics, split checks.

* :func:`load_csv` reads and checks a CheXpert-format CSV and finds each row's patient/study/view;
* :func:`compute_stats` gives Table 3 (patients, studies, images) and Table 1 (positive /
  uncertain / negative per observation, blanks as negative);
* :func:`sample_patients` writes all rows of N randomly chosen patients;
* :func:`find_shared_patients` lists patients present in more than one split.
"""

from chexphoto.dataset.loading import CheXpertTable, check_label_values, load_csv, path_keys
from chexphoto.dataset.sampling import SampleResult, choose_patients, sample_patients
from chexphoto.dataset.splits import SplitCheck, find_shared_patients
from chexphoto.dataset.stats import DatasetStats, LabelCounts, compute_stats, count_labels, percent_text

__all__ = [
    "CheXpertTable",
    "DatasetStats",
    "LabelCounts",
    "SampleResult",
    "SplitCheck",
    "check_label_values",
    "choose_patients",
    "compute_stats",
    "count_labels",
    "find_shared_patients",
    "load_csv",
    "path_keys",
    "percent_text",
    "sample_patients",
]
