//! advface-models' integration tests, one test binary (one link) for the crate: the
//! face-api.js network against TF.js (`faceapi_golden`), its fast path against the burn
//! network (`faceapi_fast`), its input gradients and weight errors (`faceapi_grad`), the
//! students (`student`) and the zoo that resolves model names (`zoo`).

mod faceapi_fast;
mod faceapi_golden;
mod faceapi_grad;
mod student;
mod zoo;
