//! Geocoding: "street and house number" to a position, and a position to the nearest
//! address (or named road) for display.

use std::collections::HashMap;
use std::sync::Arc;

use rstar::RTree;
use rstar::primitives::{GeomWithData, Line};

use crate::model::{City, StreetIdx};
use crate::point::{LatLon, Projection};

/// Reverse geocoding gives a house number only within this distance, metres.
pub const MAX_ADDRESS_DISTANCE_M: f64 = 75.0;
/// Reverse geocoding gives a street name only within this distance, metres.
pub const MAX_STREET_DISTANCE_M: f64 = 200.0;
/// Longest query accepted, bytes.
pub const MAX_QUERY_BYTES: usize = 200;

/// A parsed address query: a street name and maybe a house number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressQuery {
    pub street: String,
    pub number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeocodeError {
    #[error("the address is empty")]
    Empty,
    #[error("the address is longer than {MAX_QUERY_BYTES} bytes")]
    TooLong,
    #[error("no street named \"{street}\" in this city{}", hint(.suggestions))]
    NoSuchStreet {
        street: String,
        suggestions: Vec<String>,
    },
}

fn hint(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

impl AddressQuery {
    /// Parses "Street name 12a". The number is the first word after the street that starts
    /// with a digit, with what follows it up to a comma; anything after that comma (a city)
    /// is ignored. Street names may hold commas themselves ("Kaivopiha, Mannerheimintie").
    pub fn parse(text: &str) -> Result<Self, GeocodeError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(GeocodeError::TooLong);
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .filter(|&i| i > 0);
        let (street, number) = match at {
            Some(i) => {
                let rest = words[i..].join(" ");
                let number = rest.split(',').next().unwrap_or("").trim().to_string();
                (words[..i].join(" "), Some(number))
            }
            None => (words.join(" "), None),
        };
        let street = street.trim_end_matches(',').trim().to_string();
        if !street.chars().any(char::is_alphabetic) {
            return Err(GeocodeError::Empty);
        }
        Ok(Self { street, number })
    }
}

/// Where an address query landed.
#[derive(Debug, Clone, PartialEq)]
pub struct GeocodeHit {
    pub street: String,
    /// The house number found; differs from the query's when `exact` is false.
    pub number: Option<String>,
    pub location: LatLon,
    /// True when the street and number both matched exactly.
    pub exact: bool,
}

/// The nearest address or named road to a point.
#[derive(Debug, Clone, PartialEq)]
pub struct ReverseHit {
    pub street: String,
    pub number: Option<String>,
    pub distance_m: f64,
}

impl std::fmt::Display for ReverseHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.number {
            Some(n) => write!(f, "{} {n}", self.street),
            None => write!(f, "{}", self.street),
        }
    }
}

fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn normalise_number(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

/// Leading digits of a house number ("12a" -> 12).
fn numeric_part(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Geocoding indexes for one city. Shares the city; cheap to keep in server state.
#[derive(Debug)]
pub struct Geocoder {
    city: Arc<City>,
    projection: Projection,
    by_street: HashMap<String, (StreetIdx, Vec<usize>)>,
    addresses: RTree<GeomWithData<[f64; 2], usize>>,
    named_roads: RTree<GeomWithData<Line<[f64; 2]>, StreetIdx>>,
}

impl Geocoder {
    pub fn new(city: Arc<City>) -> Self {
        let projection = city.projection();
        let mut by_street: HashMap<String, (StreetIdx, Vec<usize>)> = HashMap::new();
        for (i, name) in city.streets.iter().enumerate() {
            by_street
                .entry(normalise(name))
                .or_insert((i as StreetIdx, Vec::new()));
        }
        for (i, a) in city.addresses.iter().enumerate() {
            let key = normalise(&city.streets[a.street as usize]);
            by_street
                .entry(key)
                .or_insert((a.street, Vec::new()))
                .1
                .push(i);
        }
        let addresses = RTree::bulk_load(
            city.addresses
                .iter()
                .enumerate()
                .map(|(i, a)| GeomWithData::new(projection.project(a.location).as_array(), i))
                .collect(),
        );
        let mut segments = Vec::new();
        for road in &city.roads {
            let Some(street) = road.street else { continue };
            let pts: Vec<[f64; 2]> = road
                .polyline(&city.nodes)
                .map(|p| projection.project(p).as_array())
                .collect();
            for w in pts.windows(2) {
                segments.push(GeomWithData::new(Line::new(w[0], w[1]), street));
            }
        }
        Self {
            city,
            projection,
            by_street,
            addresses,
            named_roads: RTree::bulk_load(segments),
        }
    }

    /// Street and number to a position. An unknown number on a known street gives the
    /// nearest number on that street (same side, odd or even, first), marked not exact;
    /// no number gives the street's middle.
    pub fn geocode(&self, query: &AddressQuery) -> Result<GeocodeHit, GeocodeError> {
        let key = normalise(&query.street);
        // "Street, City": try the whole name first, then without what follows a comma.
        let found = std::iter::once(key.as_str())
            .chain(key.rsplit_once(',').map(|(head, _)| head.trim()))
            .chain(key.split_once(',').map(|(head, _)| head.trim()))
            .find_map(|k| self.by_street.get(k));
        let Some((street_idx, addrs)) = found else {
            return Err(GeocodeError::NoSuchStreet {
                street: query.street.clone(),
                suggestions: self.suggestions(&key),
            });
        };
        let street = self.city.streets[*street_idx as usize].clone();
        let city = &*self.city;
        if let Some(number) = &query.number {
            let wanted = normalise_number(number);
            if let Some(&i) = addrs
                .iter()
                .find(|&&i| normalise_number(&city.addresses[i].number) == wanted)
            {
                let a = &city.addresses[i];
                return Ok(GeocodeHit {
                    street,
                    number: Some(a.number.clone()),
                    location: a.location,
                    exact: true,
                });
            }
            if let Some(n) = numeric_part(&wanted)
                && let Some(&i) = addrs
                    .iter()
                    .filter_map(|&i| numeric_part(&city.addresses[i].number).map(|m| (i, m)))
                    .min_by_key(|&(_, m)| (m % 2 != n % 2, m.abs_diff(n), m))
                    .map(|(i, _)| i)
                    .as_ref()
            {
                let a = &city.addresses[i];
                return Ok(GeocodeHit {
                    street,
                    number: Some(a.number.clone()),
                    location: a.location,
                    exact: false,
                });
            }
        }
        // No number (or no numbers known): the middle of the street.
        let mut points: Vec<LatLon> = city
            .roads
            .iter()
            .filter(|r| r.street == Some(*street_idx))
            .flat_map(|r| r.polyline(&city.nodes).collect::<Vec<_>>())
            .collect();
        points.extend(addrs.iter().map(|&i| city.addresses[i].location));
        let n = points.len().max(1) as f64;
        let mean = LatLon::from_lat_lon(
            points.iter().map(|p| p.lat_deg()).sum::<f64>() / n,
            points.iter().map(|p| p.lon_deg()).sum::<f64>() / n,
        )
        .ok();
        // Snap the mean onto the street itself so the result is on it.
        let location = mean
            .and_then(|m| {
                let xy = self.projection.project(m).as_array();
                self.named_roads
                    .nearest_neighbor_iter(&xy)
                    .find(|s| s.data == *street_idx)
                    .and_then(|s| {
                        let p = s.geom().nearest_point(&xy);
                        self.projection.unproject(crate::point::PlanarM {
                            x_m: p[0],
                            y_m: p[1],
                        })
                    })
                    .or(Some(m))
            })
            .filter(|_| !points.is_empty());
        match location {
            Some(location) => Ok(GeocodeHit {
                street,
                number: None,
                location,
                exact: query.number.is_none(),
            }),
            None => Err(GeocodeError::NoSuchStreet {
                street: query.street.clone(),
                suggestions: Vec::new(),
            }),
        }
    }

    fn suggestions(&self, key: &str) -> Vec<String> {
        let head: String = key.chars().take(4).collect();
        let mut out: Vec<String> = self
            .city
            .streets
            .iter()
            .filter(|s| {
                let n = normalise(s);
                n.contains(key) || key.contains(&n) || (!head.is_empty() && n.starts_with(&head))
            })
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out.truncate(5);
        out
    }

    /// The nearest address within [`MAX_ADDRESS_DISTANCE_M`], else the nearest named road
    /// within [`MAX_STREET_DISTANCE_M`], else `None`.
    pub fn reverse(&self, p: LatLon) -> Option<ReverseHit> {
        let xy = self.projection.project(p).as_array();
        if let Some((a, d2)) = self
            .addresses
            .nearest_neighbor_iter_with_distance_2(&xy)
            .next()
            && d2.sqrt() <= MAX_ADDRESS_DISTANCE_M
        {
            let addr = &self.city.addresses[a.data];
            return Some(ReverseHit {
                street: self.city.streets[addr.street as usize].clone(),
                number: Some(addr.number.clone()),
                distance_m: d2.sqrt(),
            });
        }
        let (s, d2) = self
            .named_roads
            .nearest_neighbor_iter_with_distance_2(&xy)
            .next()?;
        (d2.sqrt() <= MAX_STREET_DISTANCE_M).then(|| ReverseHit {
            street: self.city.streets[s.data as usize].clone(),
            number: None,
            distance_m: d2.sqrt(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_into_street_and_number() {
        let cases = [
            ("Mannerheimintie 5", "Mannerheimintie", Some("5")),
            (
                "  Pohjoisesplanadi   11-13 , Helsinki",
                "Pohjoisesplanadi",
                Some("11-13"),
            ),
            ("Mannerheimintie 5, Helsinki", "Mannerheimintie", Some("5")),
            (
                "Kaivopiha, Mannerheimintie 10",
                "Kaivopiha, Mannerheimintie",
                Some("10"),
            ),
            ("Kauppatori, Helsinki", "Kauppatori, Helsinki", None),
            ("Aleksanterinkatu 52 A", "Aleksanterinkatu", Some("52 A")),
            ("Kauppatori", "Kauppatori", None),
            ("Street 7 23", "Street", Some("7 23")),
        ];
        for (text, street, number) in cases {
            let q = AddressQuery::parse(text).unwrap();
            assert_eq!(q.street, street, "{text}");
            assert_eq!(q.number.as_deref(), number, "{text}");
        }
    }

    #[test]
    fn bad_queries_are_refused() {
        let cases = [
            ("", GeocodeError::Empty, "nothing"),
            ("  ,  ", GeocodeError::Empty, "only punctuation"),
            ("12", GeocodeError::Empty, "only a number"),
        ];
        for (text, err, why) in cases {
            assert_eq!(AddressQuery::parse(text), Err(err), "{why}");
        }
        assert_eq!(
            AddressQuery::parse(&"x".repeat(201)),
            Err(GeocodeError::TooLong)
        );
    }
}
