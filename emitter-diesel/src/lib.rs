//! `EmittingConnection`: the Diesel side of diesel-emitter.
pub mod model;
