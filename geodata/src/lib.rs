//! Muster's city model: road graph, routing, areas, stations and hospitals, geocoding.
//!
//! A city is imported once from OpenStreetMap (or generated for scale tests), written to a
//! compact city file, and loaded by the server at start. Routing answers road travel times
//! for the dispatcher, including many-to-one queries (every candidate unit to one incident)
//! and road closures applied without stalling queries. Geocoding turns a street and house
//! number into a position and back. The base map is served as GeoJSON to the wall display,
//! with no internet tile server.
//!
//! Every distance is in metres on a local plane or on the sphere, never Euclidean on
//! degrees; every time is in milliseconds or seconds and says so.
//!
//! # Layout
//! - [`point`]: validated WGS 84 positions ([`LatLon`]) and the city's planar projection.
//! - [`model`]: the city model ([`City`]): roads, streets, addresses, districts, stations,
//!   hospitals, base-map lines, and its GeoJSON base map.
//! - [`format`](mod@format): the city file (header, version, checksum, postcard
//!   payload), atomic writes.
//! - [`graph`]: directed arcs of the road graph and strongly connected components.
//! - [`ch`]: many-to-one queries on a contraction hierarchy prepared by `fast_paths`.
//! - [`routing`]: the [`Router`]: snapping, travel times, routes, road conditions swapped in
//!   from background preparation.
//! - [`import`]: OpenStreetMap PBF import in two bounded-memory passes.
//! - [`areas`]: first-due station areas computed over the road graph.
//! - [`demo`]: the documented rule placing made-up districts, stations and hospitals.
//! - [`generate`]: the generated city (road hierarchy, river with few bridges).
//! - [`geocode`]: street and house number to a position, and back.

pub mod areas;
pub mod ch;
pub mod demo;
pub mod format;
pub mod generate;
pub mod geocode;
pub mod graph;
pub mod import;
pub mod model;
pub mod point;
pub mod routing;

pub use format::CityFileError;
pub use model::{City, OSM_ATTRIBUTION};
pub use point::LatLon;
pub use routing::{RouteError, Router};
