//! Which route a connection takes: by listener and the SNI name in the
//! ClientHello. Socket-free, so it is tested without any TLS.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::Route;

/// The routes of one listen address, by SNI name.
#[derive(Debug, Clone)]
pub struct Listener {
    /// The address.
    pub addr: SocketAddr,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
    /// Every route index on this listener.
    pub routes: Vec<usize>,
}

/// Why no route was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// The client named a host no route answers.
    #[error("no route for SNI '{0}' (and no default route on this address)")]
    UnknownName(String),
    /// The client sent no SNI and no route is the default.
    #[error("the client sent no SNI and no route on this address is the default")]
    NoName,
}

impl Listener {
    /// The route for `sni` (lower-cased by the caller or not): an exact name,
    /// else a `*.` wildcard for its parent, else the default route.
    pub fn pick(&self, sni: Option<&str>) -> Result<usize, NoRoute> {
        let Some(name) = sni else {
            return self.default.ok_or(NoRoute::NoName);
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return Ok(i);
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(&i) = self.wildcard.get(parent) {
                return Ok(i);
            }
        }
        self.default.ok_or(NoRoute::UnknownName(name))
    }
}

/// Groups routes by listen address, in the order they first appear.
pub fn listeners(routes: &[Route]) -> Vec<Listener> {
    let mut out: Vec<Listener> = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let pos = match out.iter().position(|l| l.addr == route.listen) {
            Some(pos) => pos,
            None => {
                out.push(Listener {
                    addr: route.listen,
                    exact: HashMap::new(),
                    wildcard: HashMap::new(),
                    default: None,
                    routes: Vec::new(),
                });
                out.len() - 1
            }
        };
        let l = &mut out[pos];
        l.routes.push(i);
        match route.sni.as_deref() {
            None => l.default = Some(i),
            Some(s) => match s.strip_prefix("*.") {
                Some(parent) => {
                    l.wildcard.insert(parent.to_ascii_lowercase(), i);
                }
                None => {
                    l.exact.insert(s.to_ascii_lowercase(), i);
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Direction, GatewayConfig, RouteSpec};

    fn route(listen: &str, sni: Option<&str>) -> Route {
        RouteSpec {
            listen: Some(listen.into()),
            sni: sni.map(str::to_string),
            cert: Some("c".into()),
            key: Some("k".into()),
            to: Some("127.0.0.1:1".into()),
            device_ca: Some("d".into()),
            device_name: Some("openmv".into()),
            ..RouteSpec::default()
        }
        .build(1, Direction::Inbound)
        .unwrap()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let routes = vec![
            route("0.0.0.0:443", Some("cam1.example.com")),
            route("0.0.0.0:443", Some("*.fleet.example.com")),
            route("0.0.0.0:443", None),
            route("0.0.0.0:8883", Some("mqtt.example.com")),
        ];
        let ls = listeners(&routes);
        assert_eq!(ls.len(), 2);
        let l = &ls[0];
        assert_eq!(l.pick(Some("CAM1.example.com.")), Ok(0));
        assert_eq!(l.pick(Some("a.fleet.example.com")), Ok(1));
        assert_eq!(l.pick(Some("a.b.fleet.example.com")), Ok(2));
        assert_eq!(l.pick(None), Ok(2));
        let m = &ls[1];
        assert_eq!(m.pick(Some("mqtt.example.com")), Ok(3));
        assert_eq!(
            m.pick(Some("other.example.com")),
            Err(NoRoute::UnknownName("other.example.com".into()))
        );
        assert_eq!(m.pick(None), Err(NoRoute::NoName));
    }

    #[test]
    fn a_config_file_groups_into_listeners() {
        let c = GatewayConfig::single(
            RouteSpec {
                listen: Some("127.0.0.1:0".into()),
                acme: Some("live/x".into()),
                to: Some("127.0.0.1:1".into()),
                device_ca: Some("d".into()),
                device_name: Some("openmv".into()),
                ..RouteSpec::default()
            },
            Direction::Inbound,
        )
        .unwrap();
        let ls = listeners(&c.routes);
        assert_eq!(ls[0].pick(Some("anything")), Ok(0));
    }
}
