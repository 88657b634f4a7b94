//! faultline scores semiconductor wafer sensor rows for faults with one ONNX graph that holds both
//! the preprocessing and the gradient-boosted model, so training and serving never disagree.
//!
//! # Layout
//!
//! The data flows through these files, in this order:
//!
//! | stage | file | what it does |
//! |---|---|---|
//! | configuration | `config.rs` | serde types, layered loading (defaults, file, env), pure validation |
//! | reading rows | `row/mod.rs`, `row/csv.rs` | one record → a feature vector in model order, or an error naming row, column and value |
//! | scoring | `model/mod.rs` | loads graph + card, checks they match, scores batches, explains verdicts |
//! | graph compiler | `model/onnx.rs` | reads the ONNX graph (tract-onnx) and compiles it to native trees |
//! | evaluator | `model/ensemble.rs` | the flat, branch-light tree walk |
//! | model card | `model/card.rs` | the card's types |
//! | `faultline score` | `score.rs` | CSV in, verdicts CSV out, in bounded batches |
//!
//! `main.rs` only parses the command line and calls into these.

pub mod config;
pub mod model;
pub mod row;
pub mod score;
