//! The project's applications (`src/`) on a small budget, in one test binary: the main
//! training job (`train`), the lesson's exercises (`exercises`) and the character-level
//! GPT (`gpt`). Run one with `cargo test --test apps gpt::`.

mod exercises;
mod gpt;
mod second_order;
mod train;
