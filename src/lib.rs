//! NeuronXA Explorer: cross-lingual alignment of an LLM measured on its FFN neurons.
//!
//! Data flows one way: corpus + model + settings → job (worker thread) → [`run::Run`]
//! (serializable) → views and exports. The [`engine`] knows nothing of the UI; the CLI
//! (`cli`) and the GUI (`app`) are thin layers over this library.

pub mod analysis;
pub mod app;
pub mod cli;
pub mod engine;
pub mod io;
pub mod plot;
pub mod run;
