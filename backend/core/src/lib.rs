//! Muster's domain: the event schema, pure decisions (state + command -> events or a
//! typed refusal), projections and the dispatcher. No network I/O lives here.
