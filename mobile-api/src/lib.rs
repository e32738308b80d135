//! Muster's responder protocol, the mobile gateway, the client library and the device
//! simulator.
