//! Every batch file the dataset ships, read as a user would score it: the valid ones score, each
//! malformed kind fails with its own exact error. Needs the real data (see tests/common).

mod common;

use faultline::model::Model;
use faultline::row::csv::{CsvError, CsvOptions, CsvRows};
use faultline::row::Schema;

fn read(path: &std::path::Path) -> Result<faultline::row::RowBatch, CsvError> {
    let model = Model::embedded().unwrap();
    let schema = Schema::new(model.features());
    CsvRows::new(
        std::fs::File::open(path).unwrap(),
        &schema,
        CsvOptions::default(),
    )?
    .read_all()
}

#[test]
fn each_malformed_dataset_file_fails_with_its_own_error() {
    let Some(data) = common::data_dir("each_malformed_dataset_file_fails_with_its_own_error")
    else {
        return;
    };
    let dir = data.join("wafer/Training_Batch_Files");

    // 563 columns: 28 sensors absent.
    let e = read(&dir.join("Wafer_23012020_163456.csv")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the CSV lacks 28 sensor column(s) the model needs: Sensor-7..Sensor-34"
    );

    // Blank header names beyond the id column.
    let e = read(&dir.join("Wafer_24012020_150121.csv")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "header cells 555..591 (37 cells) are blank; only the first (wafer id) column may have a blank name"
    );

    // Date strings in a sensor column: the first one, by line, column and value.
    let e = read(&dir.join("Wafer_25012020_142112.csv")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2 (Wafer-300), column Sensor-332: '21-01-1998' is not a number (use an empty cell, NA or null for \
         a missing value)"
    );
    assert_eq!(
        e.cell().map(|(row, column, value, _)| (row, column, value)),
        Some((1, "Sensor-332", "21-01-1998"))
    );
}

#[test]
fn every_well_formed_dataset_file_scores_and_unlabelled_ones_have_no_labels() {
    let Some(data) = common::data_dir(
        "every_well_formed_dataset_file_scores_and_unlabelled_ones_have_no_labels",
    ) else {
        return;
    };
    let dir = data.join("wafer/Training_Batch_Files");
    let malformed = [
        "Wafer_23012020_163456.csv",
        "Wafer_24012020_150121.csv",
        "Wafer_25012020_142112.csv",
    ];
    let mut scored = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if malformed.contains(&name.as_str()) {
            continue;
        }
        let batch = read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!batch.is_empty(), "{name}");
        let labelled = batch.labels.iter().any(Option::is_some);
        let header = std::fs::read_to_string(&path).unwrap();
        let has_label_column = header
            .lines()
            .next()
            .unwrap()
            .trim_end()
            .ends_with("Good/Bad");
        assert_eq!(labelled, has_label_column, "{name}");
        scored += 1;
    }
    assert_eq!(scored, 28);
}
