//! Network weights in safetensors files with the architecture config in the header.
//!
//! The header's `__metadata__` holds `cosmograd.kind` (`"unet"` or `"cnn"`), `cosmograd.config`
//! (the config as TOML) and `cosmograd.format` (`"1"`). Tensors are stored under their `VarMap`
//! names, little-endian, in the dtype of the network (F32 or F64), so a save/load round trip is
//! bit-exact. Loading checks, in order: the kind, every config field (the error names the first
//! field that differs with both values), that every weight of the network is in the file with
//! the same shape, and that the file has no other tensors. An existing file is only overwritten
//! with `force = true` (the CLI's `--force`).

use crate::cnn::CnnConfig;
use crate::error::{Error, Result};
use crate::unet::UNetConfig;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

const KIND: &str = "cosmograd.kind";
const CONFIG: &str = "cosmograd.config";
const FORMAT: &str = "cosmograd.format";

/// A network architecture config that can be written into and checked against a weight file.
pub trait Architecture: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug {
    /// Name of the architecture in the header.
    const KIND: &'static str;
}

impl Architecture for UNetConfig {
    const KIND: &'static str = "unet";
}

impl Architecture for CnnConfig {
    const KIND: &'static str = "cnn";
}

fn werr(path: &Path, what: String) -> Error {
    Error::Weights {
        path: path.display().to_string(),
        what,
    }
}

fn sorted_vars(vm: &VarMap) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vm
        .data()
        .lock()
        .expect("VarMap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn to_bytes(t: &Tensor) -> Result<(Dtype, Vec<u8>)> {
    let flat = t.flatten_all()?.to_device(&Device::Cpu)?;
    Ok(match t.dtype() {
        DType::F32 => (Dtype::F32, flat.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::F64 => (Dtype::F64, flat.to_vec1::<f64>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        d => {
            return Err(Error::Shape {
                what: "weight tensor",
                got: format!("{d:?}"),
                expected: "f32 or f64".into(),
            })
        }
    })
}

/// Writes the weights of `vm` with the config `cfg` to `path`. Refuses to overwrite an existing
/// file unless `force`.
pub fn save<C: Architecture>(path: &Path, cfg: &C, vm: &VarMap, force: bool) -> Result<()> {
    let vars = sorted_vars(vm);
    let mut bufs = Vec::with_capacity(vars.len());
    for (name, t) in &vars {
        let (dt, bytes) = to_bytes(t)?;
        bufs.push((name.clone(), dt, t.dims().to_vec(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, dt, shape, b)| {
            Ok((
                n.clone(),
                TensorView::new(*dt, shape.clone(), b).map_err(|e| werr(path, format!("tensor `{n}`: {e}")))?,
            ))
        })
        .collect::<Result<_>>()?;
    let config = toml::to_string(cfg).map_err(|e| werr(path, format!("config does not serialise: {e}")))?;
    let meta = HashMap::from([
        (KIND.to_string(), C::KIND.to_string()),
        (CONFIG.to_string(), config),
        (FORMAT.to_string(), "1".to_string()),
    ]);
    let bytes = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| werr(path, e.to_string()))?;
    let io = |e| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut f = if force {
        std::fs::File::create(path).map_err(io)?
    } else {
        std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                werr(path, "exists; pass force (CLI: --force) to overwrite it".into())
            } else {
                io(e)
            }
        })?
    };
    f.write_all(&bytes).map_err(io)?;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })
}

/// Reads the architecture config stored in a weight file (to build the network before
/// [`load`]). Errors name a missing header entry or a kind that is not `C`'s.
pub fn read_config<C: Architecture>(path: &Path) -> Result<C> {
    let bytes = read(path)?;
    read_header(path, &bytes)
}

fn read_header<C: Architecture>(path: &Path, bytes: &[u8]) -> Result<C> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| werr(path, format!("not a safetensors file: {e}")))?;
    let md = meta.metadata().clone().unwrap_or_default();
    let kind = md
        .get(KIND)
        .ok_or_else(|| werr(path, format!("no `{KIND}` in the header (not written by pm-nn)")))?;
    if kind != C::KIND {
        return Err(werr(path, format!("architecture is `{kind}`, expected `{}`", C::KIND)));
    }
    let cfg = md.get(CONFIG).ok_or_else(|| werr(path, format!("no `{CONFIG}` in the header")))?;
    toml::from_str(cfg).map_err(|e| werr(path, format!("config in the header does not parse: {e}")))
}

/// First differing field of two configs, as "field `x`: file has A, network has B".
fn config_diff<C: Architecture>(file: &C, net: &C) -> String {
    let (a, b) = (toml::Value::try_from(file), toml::Value::try_from(net));
    if let (Ok(toml::Value::Table(a)), Ok(toml::Value::Table(b))) = (a, b) {
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if a.get(k) != b.get(k) {
                let show = |v: Option<&toml::Value>| v.map_or("nothing".to_string(), |v| v.to_string());
                return format!("config field `{k}`: file has {}, network has {}", show(a.get(k)), show(b.get(k)));
            }
        }
    }
    format!("config differs: file {file:?}, network {net:?}")
}

/// Loads the weights of `path` into the `Var`s of `vm` (a network built with config `cfg`).
/// Errors name the config field, tensor or shape that differs; nothing is changed on error.
pub fn load<C: Architecture>(path: &Path, cfg: &C, vm: &VarMap) -> Result<()> {
    let bytes = read(path)?;
    let file_cfg: C = read_header(path, &bytes)?;
    if &file_cfg != cfg {
        return Err(werr(path, config_diff(&file_cfg, cfg)));
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| werr(path, e.to_string()))?;
    let vars: Vec<(String, candle_core::Var)> = {
        let mut v: Vec<_> = vm
            .data()
            .lock()
            .expect("VarMap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let mut names: Vec<&str> = st.names();
    names.sort();
    if let Some(extra) = names.iter().find(|n| !vars.iter().any(|(k, _)| k == *n)) {
        return Err(werr(path, format!("unexpected tensor `{extra}` (not a weight of this network)")));
    }
    let mut staged = Vec::with_capacity(vars.len());
    for (name, var) in &vars {
        let view = st.tensor(name).map_err(|_| werr(path, format!("missing tensor `{name}`")))?;
        if view.shape() != var.dims() {
            return Err(werr(
                path,
                format!(
                    "tensor `{name}`: shape {:?} in the file, {:?} in the network",
                    view.shape(),
                    var.dims()
                ),
            ));
        }
        let data = view.data();
        let t = match view.dtype() {
            Dtype::F32 => Tensor::from_vec(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect::<Vec<f32>>(),
                view.shape(),
                var.device(),
            )?,
            Dtype::F64 => Tensor::from_vec(
                data.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect::<Vec<f64>>(),
                view.shape(),
                var.device(),
            )?,
            d => return Err(werr(path, format!("tensor `{name}`: dtype {d:?}, expected F32 or F64"))),
        };
        staged.push((var, t.to_dtype(var.dtype())?));
    }
    for (var, t) in staged {
        var.set(&t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::UNet;
    use candle_nn::VarBuilder;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pm-nn-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    fn small() -> UNetConfig {
        UNetConfig {
            width: 2,
            convs: vec![1, 1],
            levels: 2,
            ..UNetConfig::wu2021()
        }
    }

    fn net(cfg: &UNetConfig, dt: DType) -> VarMap {
        let vm = VarMap::new();
        UNet::new(cfg, VarBuilder::from_varmap(&vm, dt, &Device::Cpu)).unwrap();
        vm
    }

    fn bits(vm: &VarMap) -> Vec<(String, Vec<u64>)> {
        sorted_vars(vm)
            .into_iter()
            .map(|(k, t)| {
                (
                    k,
                    t.flatten_all()
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                        .into_iter()
                        .map(f64::to_bits)
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn round_trip_is_bit_exact_and_overwrite_needs_force() {
        for dt in [DType::F32, DType::F64] {
            let cfg = small();
            let p = tmp(&format!("rt-{dt:?}.safetensors"));
            let a = net(&cfg, dt);
            save(&p, &cfg, &a, false).unwrap();
            let b = net(&cfg, dt);
            assert_ne!(bits(&a), bits(&b), "two initialisations should differ");
            load(&p, &cfg, &b).unwrap();
            assert_eq!(bits(&a), bits(&b));
            assert_eq!(read_config::<UNetConfig>(&p).unwrap(), cfg);
            let e = save(&p, &cfg, &b, false).unwrap_err();
            assert!(e.to_string().contains("--force"), "{e}");
            save(&p, &cfg, &b, true).unwrap();
        }
    }

    #[test]
    fn mismatches_are_named() {
        let cfg = small();
        let p = tmp("mm.safetensors");
        let vm = net(&cfg, DType::F32);
        save(&p, &cfg, &vm, false).unwrap();
        // Wrong config: names the field.
        let other = UNetConfig { width: 3, ..cfg.clone() };
        let e = load(&p, &other, &net(&other, DType::F32)).unwrap_err().to_string();
        assert!(
            e.contains("config field `width`") && e.contains("file has 2") && e.contains("network has 3"),
            "{e}"
        );
        // Wrong kind.
        let e = read_config::<CnnConfig>(&p).unwrap_err().to_string();
        assert!(e.contains("architecture is `unet`"), "{e}");
        // Missing tensor: the network has one more weight than the file.
        let extra = net(&cfg, DType::F32);
        extra
            .get(3, "zz.extra", candle_nn::Init::Const(0.0), DType::F32, &Device::Cpu)
            .unwrap();
        let e = load(&p, &cfg, &extra).unwrap_err().to_string();
        assert!(e.contains("missing tensor `zz.extra`"), "{e}");
        // Unexpected tensor: the file has one the network lacks.
        let p2 = tmp("mm2.safetensors");
        save(&p2, &cfg, &extra, false).unwrap();
        let e = load(&p2, &cfg, &net(&cfg, DType::F32)).unwrap_err().to_string();
        assert!(e.contains("unexpected tensor `zz.extra`"), "{e}");
        // Wrong shape, same name.
        let shaped = net(&cfg, DType::F32);
        shaped
            .get(4, "zz.extra", candle_nn::Init::Const(0.0), DType::F32, &Device::Cpu)
            .unwrap();
        let e = load(&p2, &cfg, &shaped).unwrap_err().to_string();
        assert!(e.contains("tensor `zz.extra`: shape [3] in the file, [4] in the network"), "{e}");
        // Not a safetensors file.
        let p3 = tmp("junk.safetensors");
        std::fs::write(&p3, b"junk").unwrap();
        assert!(matches!(load(&p3, &cfg, &vm), Err(Error::Weights { .. })));
        assert!(matches!(load(&tmp("absent.safetensors"), &cfg, &vm), Err(Error::Io { .. })));
    }
}
