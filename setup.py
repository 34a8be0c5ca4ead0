"""Packaging for vild: open-vocabulary detection by Vision and Language knowledge Distillation.

The pins are a set measured to install and import together on Python 3.11 (see README,
"Installation notes"). tf-models-official 2.20.0 needs tensorflow ~= 2.20.0; numpy stays below
2.4 and Pillow below 13 for official.vision; absl-py stays on 1.x.
"""
import setuptools

OPENCV = "5.0.0.93"
BEAM = "apache-beam[tfrecord]==2.77.0"  # [tfrecord]: the crcmod its TFRecord reader needs

INSTALL_REQUIRES = [
    "tensorflow==2.20.0",
    "tf-keras==2.20.1",
    "tf-models-official==2.20.0",
    "tensorflow-text==2.20.1",
    "numpy==2.3.5",
    "pillow==12.3.0",
    "pycocotools==2.0.11",
    "lvis==0.5.3",
    "gin-config==0.5.0",
    "absl-py==1.4.0",
    "safetensors==0.8.0",
    "regex==2026.11.15",  # CLIP's tokenizer splits text with Unicode classes (\p{L}, \p{N})
    "tqdm==4.70.1",
    "matplotlib==3.11.2",  # the synthetic benchmark's figures (also required by lvis)
    # lvis asks for opencv-python and tf-models-official for opencv-python-headless; both own
    # cv2/. Pinning both to one release keeps the shared files identical; `make install`
    # reinstalls the headless build last so its binary is the one on disk.
    f"opencv-python-headless=={OPENCV}",
    f"opencv-python=={OPENCV}",
]

setuptools.setup(
    name="vild",
    version="0.1.0",
    description="ViLD: open-vocabulary object detection via vision and language knowledge "
    "distillation, in TensorFlow on the Model Garden's official.vision.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["vild", "vild.*"]),
    package_data={"vild": ["data/splits/*.json", "teacher/data/*.gz"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # Region embeddings at LVIS scale (vild.distillation_data.beam_pipeline). Installs next
        # to the pins above; it holds protobuf < 7 and pyarrow < 26, below their newest.
        "beam": [BEAM],
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "execnet==2.1.2", BEAM],
    },
)
