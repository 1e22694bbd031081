//! An in-memory layer for `snapshot verify`: it records only what is at each path, which is
//! all the replay rules ([`snapinit::replay`]) look at, so a dry run over it gives the verdict
//! PID 1's replay into a real tmpfs gives, without writing anything or needing root.

use std::collections::BTreeMap;
use std::convert::Infallible;

use snapinit::replay::{Blocked, Layer, LayerError, Node};
use snapinit::tar::Entry;

type Res<T> = Result<T, LayerError<Infallible>>;

/// What a layer holds, path by path (the root `""` is always a directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelLayer {
    nodes: BTreeMap<String, Node>,
    cur: String,
    /// The chain's layer below (the snapshots, under a volatile): a non-directory there
    /// refuses a directory the payload omits, as at boot.
    lower: Option<Box<ModelLayer>>,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl ModelLayer {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty layer above `lower`.
    pub fn above(lower: &ModelLayer) -> Self {
        Self {
            lower: Some(Box::new(ModelLayer {
                nodes: lower.nodes.clone(),
                cur: String::new(),
                lower: None,
            })),
            ..Self::default()
        }
    }

    fn get(&self, path: &str) -> Option<Node> {
        if path.is_empty() {
            Some(Node::Dir)
        } else {
            self.nodes.get(path).copied()
        }
    }

    /// Follows `dir`'s components from the root; missing ones are created when `create`,
    /// else reported as `Ok(false)`.
    fn walk(&mut self, dir: &str, create: bool) -> Res<bool> {
        if dir.is_empty() {
            return Ok(true);
        }
        let mut end = 0;
        for comp in dir.split('/') {
            end += comp.len();
            let prefix = &dir[..end];
            match self.get(prefix) {
                Some(Node::Dir) => {}
                None if create => {
                    let below = self.lower.as_ref().and_then(|l| l.get(prefix));
                    let why = match below {
                        Some(Node::Symlink) => Some(Blocked::Symlink),
                        Some(Node::File | Node::Other) => Some(Blocked::NotDir),
                        Some(Node::Dir | Node::Whiteout) | None => None,
                    };
                    if let Some(why) = why {
                        return Err(LayerError::Blocked { prefix: end, why });
                    }
                    self.nodes.insert(prefix.to_string(), Node::Dir);
                }
                None => return Ok(false),
                Some(Node::Symlink) => {
                    return Err(LayerError::Blocked {
                        prefix: end,
                        why: Blocked::Symlink,
                    })
                }
                Some(_) => {
                    return Err(LayerError::Blocked {
                        prefix: end,
                        why: Blocked::NotDir,
                    })
                }
            }
            end += 1;
        }
        Ok(true)
    }

    fn put(&mut self, name: &str, node: Node) {
        self.nodes.insert(join(&self.cur, name), node);
    }
}

impl Layer for ModelLayer {
    type Error = Infallible;

    fn enter(&mut self, dir: &str) -> Res<()> {
        self.walk(dir, true)?;
        self.cur = dir.to_string();
        Ok(())
    }

    fn kind(&mut self, name: &str) -> Res<Option<Node>> {
        Ok(self.get(&join(&self.cur, name)))
    }

    fn lookup(&mut self, path: &str) -> Res<Option<Node>> {
        let (dir, _) = path.rsplit_once('/').unwrap_or(("", path));
        if !self.walk(dir, false)? {
            return Ok(None);
        }
        Ok(self.get(path))
    }

    fn remove(&mut self, name: &str) -> Res<()> {
        let path = join(&self.cur, name);
        let below = format!("{path}/");
        self.nodes
            .retain(|p, _| p.as_str() != path && !p.starts_with(&below));
        Ok(())
    }

    fn mkdir(&mut self, name: &str) -> Res<()> {
        self.put(name, Node::Dir);
        Ok(())
    }

    fn dir_meta(&mut self, name: &str, _: &Entry, empty: bool, _opaque: bool) -> Res<()> {
        if empty {
            let path = join(&self.cur, name);
            let below = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            self.nodes.retain(|p, _| !p.starts_with(&below));
        }
        Ok(())
    }

    fn create(&mut self, name: &str, _: &Entry) -> Res<()> {
        self.put(name, Node::File);
        Ok(())
    }

    fn write(&mut self, _: &[u8]) -> Res<()> {
        Ok(())
    }

    fn close_file(&mut self, _: &Entry) -> Res<()> {
        Ok(())
    }

    fn symlink(&mut self, name: &str, _: &Entry, _: &str) -> Res<()> {
        self.put(name, Node::Symlink);
        Ok(())
    }

    fn whiteout(&mut self, name: &str, _: &Entry) -> Res<()> {
        self.put(name, Node::Whiteout);
        Ok(())
    }

    fn link(&mut self, name: &str, target: &str) -> Res<()> {
        let node = self.get(target).unwrap_or(Node::File);
        self.put(name, node);
        Ok(())
    }

    fn finish(&mut self) -> Res<()> {
        Ok(())
    }
}
