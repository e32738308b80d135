//! Muster's drill engine: scenarios, simulated responders, replay and reports.
