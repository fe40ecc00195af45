//! Network namespaces for the members (root only): each member gets a
//! namespace with one veth link into a bridge in the tester's namespace,
//! on its own /24 (`10.77.<net>.0`; the bridge is .254, member i is .i+1).
//! The clients reach every member through the bridge.
//!
//! **Partitions** are blackhole routes: to cut a from b, member a's
//! namespace gets `blackhole <b>/32` and b's gets `blackhole <a>/32`, so
//! neither can send the other a single packet (SYN, data or ACK), whoever
//! opened the connection. Only the namespaces' routes change; the tester's
//! namespace and the clients' paths stay as they were. This needs only
//! iproute2, no iptables.
//!
//! With link faults on, member i's peer proxy listens on the bridge at
//! `.i+101` ([`super::proxy`]); a cut blackholes that address too, so a
//! partition holds whether the members dial each other or the proxies.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::JepsenError;

/// The namespaces and links of one run; removed on drop.
pub struct Netns {
    net: u8,
    members: usize,
}

/// Subnets (and name sets) to choose from: 10.77.1.0/24 to 10.77.240.0/24.
const NETS: u16 = 240;

impl Netns {
    /// Creates the bridge and one namespace per member, on the first free
    /// subnet from `net` on (1..=240): runs at the same time (tests, another
    /// tester) each get their own, and never touch each other's. A subnet
    /// is taken while its bridge or any of its namespaces exists; a run
    /// killed before it could clean up leaves them (`ip link del
    /// oxj<N>br; ip netns del oxj<N>n<i>`).
    pub fn create(net: u8, members: usize) -> Result<Netns, JepsenError> {
        let mut last = JepsenError::Net(format!("no free subnet among {NETS}"));
        for offset in 0..NETS {
            let net = ((u16::from(net.max(1)) - 1 + offset) % NETS + 1) as u8;
            if taken(net) {
                continue;
            }
            // Creating the bridge claims the subnet: if another run took it
            // meanwhile, this fails and the next one is tried.
            if let Err(e) = ip(&["link", "add", &bridge_name(net), "type", "bridge"]) {
                last = e;
                continue;
            }
            // From here on, dropping `netns` removes what was made.
            let netns = Netns { net, members };
            netns.populate()?;
            return Ok(netns);
        }
        Err(last)
    }

    /// Addresses the claimed bridge, adds the members' namespaces and links.
    fn populate(&self) -> Result<(), JepsenError> {
        let (net, members, netns) = (self.net, self.members, self);
        let bridge = netns.bridge();
        ip(&[
            "addr",
            "add",
            &format!("10.77.{net}.254/24"),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..members {
            let (ns, host, inner) = (netns.ns(i), netns.host_link(i), netns.inner_link(i));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &host, "master", &bridge])?;
            ip(&["link", "set", &host, "up"])?;
            let addr = format!("{}/24", netns.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Whether namespaces can be made here (root, iproute2).
    pub fn available() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        root && Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn addr(&self, member: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.net, member as u8 + 1)
    }

    /// Where member `member`'s peer proxy listens (on the bridge).
    pub fn proxy_addr(&self, member: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.net, member as u8 + 101)
    }

    /// Puts [`Netns::proxy_addr`] on the bridge, so the members reach it.
    pub fn add_proxy_addr(&self, member: usize) -> Result<(), JepsenError> {
        let addr = format!("{}/32", self.proxy_addr(member));
        ip(&["addr", "add", &addr, "dev", &self.bridge()])
    }

    /// The namespace member `member` runs in.
    pub fn ns(&self, member: usize) -> String {
        format!("oxj{}n{member}", self.net)
    }

    fn bridge(&self) -> String {
        bridge_name(self.net)
    }
    fn host_link(&self, member: usize) -> String {
        format!("oxj{}h{member}", self.net)
    }
    fn inner_link(&self, member: usize) -> String {
        format!("oxj{}m{member}", self.net)
    }

    /// Cuts every link between the members of different groups.
    pub fn partition(&self, groups: &[Vec<usize>]) -> Result<(), JepsenError> {
        for (g, group) in groups.iter().enumerate() {
            for other in groups.iter().skip(g + 1) {
                for &a in group {
                    for &b in other {
                        self.cut(a, b)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Cuts the link between two members, both ways.
    pub fn cut(&self, a: usize, b: usize) -> Result<(), JepsenError> {
        let route = |from: usize, to: usize| {
            [self.addr(to), self.proxy_addr(to)]
                .iter()
                .try_for_each(|to| {
                    let to = format!("{to}/32");
                    ip(&["-n", &self.ns(from), "route", "replace", "blackhole", &to])
                })
        };
        route(a, b)?;
        route(b, a)
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<(), JepsenError> {
        for i in 0..self.members {
            ip(&["-n", &self.ns(i), "route", "flush", "type", "blackhole"])?;
        }
        Ok(())
    }

    /// Best effort: deleting a namespace also deletes its end of the veth,
    /// which takes the other end with it.
    fn remove(&self) {
        for i in 0..self.members {
            let _ = quiet(&["netns", "del", &self.ns(i)]);
            let _ = quiet(&["link", "del", &self.host_link(i)]);
        }
        let _ = quiet(&["link", "del", &self.bridge()]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

fn bridge_name(net: u8) -> String {
    format!("oxj{net}br")
}

/// Whether subnet `net` is in use: its bridge or a namespace of its exists.
fn taken(net: u8) -> bool {
    let bridge = quiet(&["link", "show", &bridge_name(net)]).is_ok_and(|o| o.status.success());
    let prefix = format!("oxj{net}n");
    let namespaces = quiet(&["netns", "list"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    bridge
        || namespaces
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .any(|ns| {
                ns.strip_prefix(&prefix)
                    .is_some_and(|i| i.parse::<u8>().is_ok())
            })
}

fn ip(args: &[&str]) -> Result<(), JepsenError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| JepsenError::Net(format!("ip {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(JepsenError::Net(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn quiet(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("ip").args(args).output()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// The route the kernel picks from one member to another.
    fn route_get(netns: &Netns, from: usize, to: usize) -> String {
        let out = Command::new("ip")
            .args([
                "-n",
                &netns.ns(from),
                "route",
                "get",
                &netns.addr(to).to_string(),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    #[test]
    fn partitions_cut_both_ways_and_heal() {
        if !Netns::available() {
            eprintln!("skipped: needs root and iproute2");
            return;
        }
        let netns = Netns::create(200, 3).unwrap();
        // A second set at the same time gets another subnet.
        let other = Netns::create(netns.net, 1).unwrap();
        assert_ne!(other.net, netns.net);
        assert!(taken(netns.net) && taken(other.net));
        drop(other);
        // The tester reaches member 0 through the bridge.
        let listener = TcpListener::bind(format!("10.77.{}.254:0", netns.net));
        assert!(listener.is_ok());
        assert!(!route_get(&netns, 0, 1).contains("blackhole"));
        netns.partition(&[vec![0], vec![1, 2]]).unwrap();
        for (a, b) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
            let route = route_get(&netns, a, b);
            assert!(
                route.contains("Invalid argument") || route.contains("blackhole"),
                "{a}->{b}: {route}"
            );
        }
        // The proxies' addresses are cut too.
        let to_proxy = Command::new("ip")
            .args(["-n", &netns.ns(0), "route", "show", "type", "blackhole"])
            .output()
            .unwrap();
        let blackholes = String::from_utf8_lossy(&to_proxy.stdout);
        assert!(
            blackholes.contains(&netns.proxy_addr(1).to_string()),
            "{blackholes}"
        );
        assert!(!route_get(&netns, 1, 2).contains("blackhole"));
        netns.heal().unwrap();
        assert!(!route_get(&netns, 0, 1).contains("blackhole"));
        // The tester's namespace reaches a member's kernel (a closed port
        // answers with a reset at once instead of timing out).
        let refused =
            TcpStream::connect_timeout(&(netns.addr(0), 1).into(), Duration::from_secs(2));
        assert!(refused.is_err());
    }
}
